"""The Ray runtime: virtual nodes, node actors, the TopologyManager and the FederatedBase driver."""
