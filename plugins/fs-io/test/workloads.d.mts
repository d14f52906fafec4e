export declare const LAUNCHER: readonly string[];
export declare const MIXED_PY: string;
export declare const EXPECTED_MIXED: {
  parent: {
    writeOps: number;
    writeBytes: number;
    readOps: number;
    readBytes: number;
    opens: number;
    fsync: number;
    fdatasync: number;
  };
  child: { writeOps: number; writeBytes: number };
  missingOpens: number;
};
export interface Launched {
  pid: number;
  exited: Promise<number | null>;
  go(): Promise<number | null>;
}
export declare function launch(argv: readonly string[]): Launched;
