"""Running a trained bundle over the grid: the engine and the LSTM state store."""
