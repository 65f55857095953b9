// Parses each file named on the command line with binary-version-reader (the peer parser) and
// prints one JSON object per line: the fields modflash compares, or the error it threw.
'use strict';
const { HalModuleParser } = require('binary-version-reader');

async function parse(file) {
  try {
    const info = await new HalModuleParser().parseFile(file);
    const p = info.prefixInfo;
    const exts = [].concat(p.extensions || [], (info.suffixInfo && info.suffixInfo.extensions) || []);
    return {
      file,
      platform: p.platformID,
      function: p.moduleFunction,
      index: p.moduleIndex,
      version: p.moduleVersion,
      start: parseInt(p.moduleStartAddy, 16),
      end: parseInt(p.moduleEndAddy, 16),
      prefix_offset: p.prefixOffset,
      deps: [
        [p.depModuleFunction, p.depModuleIndex, p.depModuleVersion],
        [p.dep2ModuleFunction, p.dep2ModuleIndex, p.dep2ModuleVersion],
      ],
      crc_ok: info.crc.ok,
      asset_dependencies: exts
        .filter((e) => e.type === 0x12)
        .map((e) => ({ name: e.name, hash: e.hash })),
    };
  } catch (e) {
    return { file, error: String(e && e.message ? e.message : e) };
  }
}

(async () => {
  for (const f of process.argv.slice(2)) {
    console.log(JSON.stringify(await parse(f)));
  }
})();
