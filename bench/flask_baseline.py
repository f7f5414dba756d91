"""The design Gavel's competitors ship, as a baseline for the benchmarks (not part of Gavel).

A Flask app behind gunicorn that prices one listing per request with the same sklearn
pipeline: validate the JSON, build a one-row frame, ``pipeline.predict``. Fed one POST at
a time by a few client threads, like the ``send_data`` scripts of such projects.

Run by ``bench_stream.py``: ``gunicorn -w 2 -b 127.0.0.1:PORT 'bench.flask_baseline:app'``
with ``GAVEL_BENCH_PIPELINE`` naming a pickled pipeline.
"""

from __future__ import annotations

import os
import pickle
from typing import Any

from flask import Flask, jsonify, request
from pydantic import ValidationError

from gavel.features import listings_frame
from gavel.schemas import Listing

app = Flask(__name__)
with open(os.environ["GAVEL_BENCH_PIPELINE"], "rb") as source:
    PIPELINE = pickle.load(source)


@app.post("/predict")
def predict() -> Any:
    try:
        listing = Listing.model_validate(request.get_json())
    except ValidationError as exc:
        return jsonify({"detail": exc.errors(include_url=False)}), 422
    price = float(PIPELINE.predict(listings_frame([listing]))[0])
    return jsonify({"auction_id": listing.auction_id, "predicted_price": round(price, 2)})
