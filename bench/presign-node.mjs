// The reference design's presign loop: one sequential getSignedUrl per part, as an
// Express route does. Prints one line per run: the loop's time in milliseconds.
import { S3Client, UploadPartCommand } from "@aws-sdk/client-s3";
import { getSignedUrl } from "@aws-sdk/s3-request-presigner";

const parts = Number(process.argv[2] ?? 10000);
const runs = Number(process.argv[3] ?? 5);
const client = new S3Client({
  region: "us-east-1",
  endpoint: "http://127.0.0.1:9000",
  forcePathStyle: true,
  credentials: { accessKeyId: "AKIDEXAMPLE", secretAccessKey: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY" },
});
for (let run = 0; run < runs; run++) {
  const urls = [];
  const start = process.hrtime.bigint();
  for (let n = 1; n <= parts; n++) {
    urls.push(
      await getSignedUrl(
        client,
        new UploadPartCommand({ Bucket: "bucket", Key: "uploads/some file ü.bin", UploadId: "2~abc+def/ghi=", PartNumber: n }),
        { expiresIn: 604800 },
      ),
    );
  }
  const ms = Number(process.hrtime.bigint() - start) / 1e6;
  if (urls.length !== parts) throw new Error("missing URLs");
  console.log(ms.toFixed(3));
}
