"""``serverlord tui``: a live terminal view of a server's checks.

It talks to a running server over HTTP only (the management API, its live
events and ``/metrics``). ``model`` holds the plain data and formatting,
``client`` the HTTP side, ``app`` and the ``*_screen`` modules the Textual
interface. Textual is imported only when the command runs.
"""
