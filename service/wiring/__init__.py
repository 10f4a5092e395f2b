"""The composition root: where `Settings` becomes the objects that do the work.

Every room below (channels, receipts, pipeline, ledger) takes its own small frozen config or
keyword arguments and never imports `service.config`; a test walks their imports to keep it so
(tests/test_import_graph.py). Each module here turns one concern's settings into those values:

    channels   the dispatcher, its routes, senders, breakers and rate limits
    kafka      the consumer, the producer, topic creation
    receipts   the receipt webhook's config and routes
    pipeline   policy and templates, the ledger, the processor, the scheduler, the engine's
               config: one builder for `run`, the simulation and the bench

`service.app.NotifierApp` puts them together into the running service.
"""
