"""The Ship-of-Theseus watchdog: supervision, restart policy, and upgrades with rollback."""
