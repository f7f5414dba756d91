"""The scoring worker (`gavel worker`): a Faust app that prices `auctions.listed` in
micro-batches with the MLflow champion."""
