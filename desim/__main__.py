from desim.cli import app

app()
