"""Front end: from a Python function to a located, fenced ``gast`` tree."""
