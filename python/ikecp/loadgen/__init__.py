"""The load generator: thousands of simulated FAPs against any IKEv2 responder (``ikecp loadgen``),
its report, and a Locust user for runs across machines."""
