"""The tracking family: silicon trackers in a solenoid (toy tracker, TrackML)."""
