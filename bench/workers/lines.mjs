// Prints N parseable lines, `<series> <value>`, as fast as the pipe takes them.
const n = Number(process.argv[2] ?? 5_000_000);
const names = ['bench.a', 'bench.b', 'bench.c', 'bench.d'];
let i = 0;
function pump() {
  while (i < n) {
    let chunk = '';
    for (let k = 0; k < 4096 && i < n; k++, i++) chunk += `${names[i & 3]} ${i}\n`;
    if (!process.stdout.write(chunk)) return void process.stdout.once('drain', pump);
  }
}
pump();
