"""What the Kafka sink and the Kafka source share: client settings (servers, SASL, TLS), the wire encodings of
events, and Kafka's key partitioner."""
