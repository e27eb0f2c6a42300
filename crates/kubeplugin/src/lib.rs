//! kubeplugin: what the three kubectl plugins share.
