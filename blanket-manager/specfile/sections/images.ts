/** `images:` of a spec: builtin, qcow2 or kernel (+ initrd, append). */
import type { ImageSpec } from '../../../core/spec.ts'
import type { SpecPath } from '../locate.ts'
import { entries, isObject, str, type NormalizeContext, type Obj } from '../raw.ts'

export function normalizeImages (rawImages: Obj, ctx: NormalizeContext): Record<string, ImageSpec> {
  const { report, resolvePath } = ctx
  const images: Record<string, ImageSpec> = {}
  for (const [imageName, v] of entries(rawImages)) {
    const at: SpecPath = ['images', imageName]
    ctx.checkName('image', imageName, at)
    if (!isObject(v)) continue
    const kinds = (['builtin', 'qcow2', 'kernel'] as const).filter(k => v[k] !== undefined)
    const [kind, second] = kinds
    if (kind === undefined) {
      report(at, 'an image needs one of builtin, qcow2 or kernel', 'key')
      continue
    }
    if (second !== undefined) report([...at, second], `an image is either builtin, qcow2 or kernel; '${imageName}' has both ${kind} and ${second}`, 'key')
    if (kind !== 'kernel') {
      for (const k of ['initrd', 'append'] as const) {
        if (v[k] !== undefined) report([...at, k], `'${k}' is only used with kernel images`, 'key')
      }
    }
    if (kind === 'builtin') images[imageName] = { name: imageName, kind: 'builtin', builtin: 'tiny' }
    else if (kind === 'qcow2') images[imageName] = { name: imageName, kind: 'qcow2', path: resolvePath(str(v.qcow2) ?? '') }
    else {
      const img: ImageSpec & { kind: 'kernel' } = { name: imageName, kind: 'kernel', kernel: resolvePath(str(v.kernel) ?? '') }
      const initrd = str(v.initrd)
      if (initrd !== undefined) img.initrd = resolvePath(initrd)
      if (typeof v.append === 'string') img.append = v.append
      images[imageName] = img
    }
  }
  return images
}
