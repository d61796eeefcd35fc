"""Process plumbing: settings, logging, systemd notification and how a command exits."""
