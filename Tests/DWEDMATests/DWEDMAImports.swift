// Keeps the DWEDMATests target buildable until its module has tests; the module must import cleanly.
import DWEDMA
