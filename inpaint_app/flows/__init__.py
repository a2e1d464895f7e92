"""Flow families behind one interface (see ``base.Flow``)."""
