"""avlearn.video: pure functions on video clips ``(C, T, H, W)`` (and thin modules around them)."""
