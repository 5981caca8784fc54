"""The chaos run on real CLN (issue 14): a seeded driver throws payments,
sleeps, kill -9, disconnects and blocks at a seven-node regtest network,
then checks the books (docs/chaos.md).

network.py builds the nodes and channels and knows how to sleep, wake, kill
and reconnect them; driver.py plays a seed's events and records what each
payment did; invariants.py checks the end state and prints the table."""
