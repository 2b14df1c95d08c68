"""graphhooks: the admin CLI of the Graph change notifications app (an operator tool, never deployed)."""
