"""Console controllers: parse the request, call one service, render."""
