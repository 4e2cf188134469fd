"""The CAI engine: pure stages, numpy arrays in and out (imports only numpy, scipy, cv2, numba)."""
