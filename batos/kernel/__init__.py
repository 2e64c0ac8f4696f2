"""The kernel: a sans-IO core that runs a request against the image
(:mod:`.core`), the asyncio ZeroMQ shell around it (:mod:`.server`), and the
composition root that wires image, personas, cycle engine and loops together
for the CLI and the tests alike (:mod:`.compose`)."""
