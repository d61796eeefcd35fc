"""Process plumbing: settings, addresses, logging, systemd notification and how a command exits."""
