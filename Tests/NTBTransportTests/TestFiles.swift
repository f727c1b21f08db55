import FoundationEssentials

/// Writes a scratch file for a test.
func writeTestFile(_ path: String, _ text: String) throws {
    try Data(text.utf8).write(to: URL(fileURLWithPath: path))
}

/// Removes a scratch file (ignoring errors: the test may have failed before creating it).
func removeTestFile(_ path: String) {
    try? FileManager.default.removeItem(atPath: path)
}
