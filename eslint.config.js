import neostandard from 'neostandard'

export default neostandard({ ts: true, ignores: ['dist/**', 'data/**', 'migrations/**', 'node_modules/**', 'bench/results/**', 'test/generated/**'] })
