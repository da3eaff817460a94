"""The prelabel web console."""
