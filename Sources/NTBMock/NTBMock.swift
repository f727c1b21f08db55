/// Device models for running without hardware: the NTB link (two peers, shared memory), the vNTB
/// endpoint function, and the DW eDMA engine. See docs/mock-device.md.
public enum NTBMock {}
