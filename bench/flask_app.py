"""The reference the service replaces: the same hello API in Flask, served by gunicorn."""

import os

from flask import Flask, jsonify

app = Flask(__name__)
VERSION = os.environ.get("APP_VERSION", "bench")
REGION = os.environ.get("AWS_REGION", "local")


@app.get("/")
def index():
    return jsonify(message="Hello from bluegreen", version=VERSION, region=REGION, instance="bench")


@app.get("/health")
def health():
    return jsonify(status="healthy", version=VERSION, region=REGION)
