"""Running code the system wrote, contained: today the trial of a candidate
method in a separate, limited child process."""
