import KilnBackend

/// The Kafka-API broker (Tansu here) as the event log: operations, client and places.
public enum KafkaBackend {
    public static let descriptor = Backend(
        driver: StoreDriver(KafkaClient.self) { try KafkaClient(context: $0) }, places: [.kafkaMessages],
        scanners: [ScannerDriver(place: .kafkaMessages) { try KafkaScanner(context: $0) }],
        stack: KafkaStackConfig.stackSide)
}

extension RowPlace {
    /// Messages of `<ns>.transactions`, written by `bulk` and `produce`.
    public static let kafkaMessages = RowPlace("messages", writtenBy: [KafkaOperation.bulk, .produce])
}
