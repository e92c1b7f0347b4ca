"""tau2-bench as a suite (:mod:`.suite`, registered as ``tau2``)."""
