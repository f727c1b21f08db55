/// DesignWare eDMA (v0 register map) driver: register tables, channels, linked-list descriptors,
/// completion. Reference: `docs/hardware-reference.md` §1 and §5; Linux `drivers/dma/dw-edma/`.
public enum DWEDMA {}
