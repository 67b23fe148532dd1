"""The GSM3 network, its loss and its on-disk bundle."""
