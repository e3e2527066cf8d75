//! Cluster scenarios 7 and 8: corosync killed and network partitions, with fencing.
