/**
 * Overdriver in the host agent: the names other modules imported from here before the split.
 * The agent's side (swap exports, page repository, the overload loop) is ./overdriver-host.ts;
 * the controller's side (brokering swap launches, schema events) is ./overdriver-control.ts.
 * The host side loads the NBD server and the page repository only when it first serves them,
 * so importing this module (the controller does) loads neither.
 */
export { AgentOverdriver, startedIncoming, type SwapStop } from './overdriver-host.ts'
export { REPOSITORY_PORT, brokerSwapLaunch, toSchemaEvent, type SchemaEventJson, type SwapBroker } from './overdriver-control.ts'
export type { AdoptTableParams, AdoptTableResult, ConfigureParams, HandoverParams, IssueParams, RepositoryGrantJson, RepositoryParams, SwapLaunch } from './protocol.ts'
