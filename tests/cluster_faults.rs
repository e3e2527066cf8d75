//! Cluster scenarios 4, 5, 6 and 9: process kills, a lagging standby, a diverged old primary.
