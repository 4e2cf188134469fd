"""The CAI engine: pure stages, numpy arrays in and out (imports only numpy, cv2, numba)."""
