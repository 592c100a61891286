"""Model monitoring: reference profiles, drift (PSI), label-free performance, shifted futures."""
