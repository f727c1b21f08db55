/// Queue pairs over an NTB with pluggable backends (`host`: Linux ntb_transport v4 wire format;
/// `edma`: the RFC v3 protocol). Reference: `docs/hardware-reference.md` §2 and §4.
public enum NTBTransport {}
