// The one Python key normalizer against the node's real interpreter: every module it can import
// here (standard library, dist-packages, a package's __init__) maps back to its own __name__,
// with the interpreter's sys.path and from the path alone (what a tracer without it sees).
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { capability } from './testing/index.js';
import {
  pythonFunctionKey,
  pythonKeyOfFile,
  pythonModuleOfFile,
  pythonSysPath,
} from './python-key.js';

const python = '/usr/bin/python3';
const CANDIDATES = [
  'json',
  'json.decoder',
  'email.mime.text',
  'importlib.machinery',
  'yaml',
  'six',
  'sqlalchemy.engine.base',
  'oslo_messaging.rpc.client',
];

describe.runIf(capability('python3', existsSync(python), `${python} is missing`))(
  'Python function keys',
  () => {
    const modules = JSON.parse(
      execFileSync(
        python,
        [
          '-c',
          `import importlib, json, sys
out = []
for n in sys.argv[1:]:
    try:
        m = importlib.import_module(n)
        out.append([m.__name__, m.__file__])
    except Exception:
        pass
print(json.dumps(out))`,
          ...CANDIDATES,
        ],
        { encoding: 'utf8' },
      ),
    ) as [string, string][];

    it('names each importable module as the interpreter does, with or without its sys.path', () => {
      expect(modules.length).toBeGreaterThanOrEqual(4);
      const sysPath = pythonSysPath(python);
      expect(sysPath.length).toBeGreaterThan(0);
      for (const [name, file] of modules) {
        expect(pythonModuleOfFile(file, sysPath), file).toBe(name);
        expect(pythonModuleOfFile(file), file).toBe(name);
        // A cached bytecode file of the same module is the same module.
        expect(pythonModuleOfFile(`${file}c`), file).toBe(name);
        expect(pythonKeyOfFile(file, 'f', sysPath)).toBe(pythonFunctionKey(name, 'f'));
      }
    });

    it('a script is its stem, a frozen module its name, a path cut short unknown', () => {
      expect(pythonKeyOfFile('/srv/app/x.py', 'main', pythonSysPath(python))).toBe('x:main');
      expect(pythonModuleOfFile('<frozen importlib._bootstrap>')).toBe('importlib._bootstrap');
      expect(pythonModuleOfFile('/usr/lib/python3/dist-packages/oslo_messaging/rp')).toBe('?');
      expect(pythonFunctionKey('', 'f')).toBe('?:f');
    });
  },
);
