// Served instead of web/ only when ComfyUI is older than the pack's minimum (the pack's __init__.py
// decides): shows the pack's "update ComfyUI" message in the browser, with the text the server logged.
import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";

app.registerExtension({
  name: "WanStream.ComfyUITooOld",
  async setup() {
    let message;
    try {
      const r = await api.fetchApi("/wanstream/comfyui_too_old");
      if (!r.ok) return;
      message = (await r.json()).message;
    } catch (e) {
      return;
    }
    console.error(`[Wan Stream] ${message}`);
    const toast = app.extensionManager?.toast;
    if (toast?.add) toast.add({ severity: "error", summary: "Wan Stream: update ComfyUI", detail: message });
    else app.ui?.dialog?.show(`Wan Stream: ${message}`);
  },
});
