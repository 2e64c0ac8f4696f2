"""The Ship-of-Theseus watchdog (arrives with the watchdog issue)."""
