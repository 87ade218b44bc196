/** Tar type flags (POSIX ustar plus the GNU and pax extensions layers use). */
export declare const TypeFlag: {
  readonly Reg: '0';
  readonly RegA: '\0';
  readonly Link: '1';
  readonly Symlink: '2';
  readonly Char: '3';
  readonly Block: '4';
  readonly Dir: '5';
  readonly Fifo: '6';
  readonly Cont: '7';
  readonly PaxHeader: 'x';
  readonly PaxGlobal: 'g';
  readonly GnuLongName: 'L';
  readonly GnuLongLink: 'K';
};
/** One ustar header block as written, before pax or GNU long-name records are applied. */
export interface RawHeader {
  readonly name: string;
  readonly mode: number;
  readonly uid: number;
  readonly gid: number;
  readonly size: number;
  readonly mtime: number;
  readonly typeflag: string;
  readonly linkname: string;
  readonly devmajor: number;
  readonly devminor: number;
}
declare const blockSize = 512;
export declare function isZeroBlock(b: Buffer): boolean;
/** Parses one header block; invalid_argument when its checksum or fields are wrong. */
export declare function parseHeader(b: Buffer): RawHeader;
/** Parses pax records (`<len> <key>=<value>\n`); values are raw bytes read as latin1 for xattrs. */
export declare function parsePax(body: Buffer): Map<string, Buffer>;
declare const padTo: (n: number) => number;
export interface EncodeEntry {
  readonly name: string;
  readonly typeflag: string;
  readonly mode: number;
  readonly uid: number;
  readonly gid: number;
  readonly mtime: number;
  readonly devmajor?: number;
  readonly devminor?: number;
  readonly linkname?: string;
  /** Body size (the caller writes the padded body after the header). */
  readonly size?: number;
  /** Extra pax records (e.g. `SCHILY.xattr.<name>`). */
  readonly pax?: ReadonlyMap<string, Buffer>;
}
/** Encodes a member's header (preceded by a pax header when a value does not fit ustar). */
export declare function encodeEntry(e: EncodeEntry): Buffer;
export { blockSize, padTo };
//# sourceMappingURL=tar-header.d.ts.map
