"""The HTTP side of serverlord: routes and the Litestar application."""
