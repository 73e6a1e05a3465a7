/**
 * VirtualWire's shared vocabulary (seed 002 ch. 5). A *connector* joins exactly two
 * *endpoints*; each endpoint lives on one host, is bound to one virtual NIC or switch port
 * there, receives on AdrA and sends full L2 frames (VXLAN wire format, connector ID as the
 * VNI) to its sister endpoint at AdrB. When both ends are on one host the connector is
 * *collapsed*: no encapsulation, both sides joined by the endpoint bridge.
 */

/** Connector IDs are VXLAN VNIs: 24 bits, 0 reserved. */
export const MIN_CONNECTOR_ID = 1
export const MAX_CONNECTOR_ID = 0xffffff

/** Default UDP port of the data plane (IANA VXLAN). */
export const DEFAULT_VW_PORT = 4789

/** Bytes VXLAN adds to each frame on an IPv4 underlay (outer IP 20 + UDP 8 + VXLAN 8 + inner Ethernet 14). */
export const VXLAN_OVERHEAD = 50

/** An endpoint address: where an endpoint receives (AdrA) or sends (AdrB). */
export interface EndpointAddress {
  ip: string
  port: number
}

/** One endpoint as the endpoint interface shows it (`cat <root>/<N>`). */
export interface EndpointConfig {
  /** Connector ID (= VNI). */
  id: number
  /** Receive address on this host. */
  local: EndpointAddress
  /** Sister endpoint's address; equal to `local` when the connector is collapsed on this host. */
  remote: EndpointAddress
}

/** Kernel object names the endpoint manager uses for endpoint N (prefix = the supercloud's). */
export function endpointBridgeName (prefix: string, id: number): string {
  return `${prefix}b${id.toString(16)}`
}

export function endpointVxlanName (prefix: string, id: number): string {
  return `${prefix}x${id.toString(16)}`
}

/** One side of a wire (`web1.eth0`) and a wire: spec value types, defined in core/spec.ts. */
export type { WireEnd, WireSpec } from '../core/spec.ts'
