// Every bound of the Raft core (TigerBeetle style: units last, each explained on its line).

/** Members of one cluster: 3 or 5 in production, 1 for tests; more would only slow commits. */
export const MEMBERS_MAX = 7;

/**
 * Entries in one AppendEntries message. The view leader's commands are small (a heartbeat's
 * effect, a join); 64 of them keep a message well under a megabyte while letting a follower that
 * was down for a while catch up in a few round trips.
 */
export const APPEND_ENTRIES_MAX = 64;

/**
 * AppendEntries messages in flight to one follower while it keeps up (pipelining). Beyond this,
 * the leader waits for acknowledgements; a heartbeat reply frees one slot, so lost messages
 * cannot stall a follower for good.
 */
export const APPENDS_IN_FLIGHT_MAX = 8;

/**
 * Entries a leader holds uncommitted (last index - commit index). A leader cut off from its
 * majority would otherwise grow its log without limit; beyond this, `propose` answers busy.
 */
export const PROPOSALS_PENDING_MAX = 1024;

/** Read-index requests waiting for confirmation at the leader; beyond this `readIndex` is busy. */
export const READS_PENDING_MAX = 1024;

/** Committed entries handed to the shell in one Ready (a restart re-applies in such batches). */
export const READY_COMMITTED_MAX = 1024;
