"""Entry point: `flask --app app …` and `gunicorn app:app`."""
from fieldsync import create_app

app = create_app()
