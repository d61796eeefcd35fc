"""Handing stored pushes on: signing, the retry schedule, the two kinds of sender and the one dispatcher."""
