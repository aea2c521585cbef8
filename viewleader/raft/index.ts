// The Raft consensus core (README.md): a pure state machine the shell drives with inputs and
// whose Ready it carries out.

export {
  APPEND_ENTRIES_MAX,
  APPENDS_IN_FLIGHT_MAX,
  MEMBERS_MAX,
  PROPOSALS_PENDING_MAX,
  READS_PENDING_MAX,
  READY_COMMITTED_MAX,
} from './limits';
export type { LogView } from './log';
export type {
  Entry,
  Envelope,
  HardState,
  NodeId,
  Persisted,
  RaftMessage,
  RaftMessageKind,
  Snapshot,
} from './messages';
export {
  RaftNode,
  type PeerProgress,
  type ProposeResult,
  type RaftConfig,
  type RaftStatus,
  type ReadIndexResult,
  type Refusal,
  type Role,
} from './node';
export type { ProgressState } from './progress';
export type { ReadState } from './read-index';
export type { Ready } from './ready';
