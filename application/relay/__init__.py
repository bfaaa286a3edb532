"""The event relay: every stored event, in global order, into a broker, exactly once.

`relay.Relay` follows the event store (the outbox) and hands CloudEvents (`envelope`) to a
`sink.Sink`; `nats.NatsJetStreamSink` is the JetStream one (a Kafka sink would be one more
module with the same four methods). `tracking` records how far it got, for status and lag.
"""
