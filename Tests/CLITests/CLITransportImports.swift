// Keeps the CLITests target buildable on the transport branch; the executable module must import cleanly.
import Testing
