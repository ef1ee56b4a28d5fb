"""The water-Cherenkov family: cylindrical tanks of (m)PMTs (WCTE, IWCD, Super-K, Hyper-K)."""
