/** A mount as containerd's API carries it (type, source, options); the target is where the caller puts it. */
export interface Mount {
  readonly type: string;
  readonly source: string;
  readonly options: readonly string[];
}
